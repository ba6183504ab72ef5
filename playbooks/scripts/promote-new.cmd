@echo off
rem ===========================================================================
rem Promotes new-sbs to an additional domain controller and global catalog of
rem acme.local, replicating from old-sbs, with an unattended dcpromo answer
rem file (KB 223757; TechNet cc758390 "dcpromo answer file").
rem
rem Runs in the ACME-Migration task (see job.cmd): dcpromo authenticates to
rem old-sbs with the task's credentials, so the answer file holds no password.
rem With no SafeModeAdminPassword the Directory Services Restore Mode password
rem stays empty: the step set-dsrm-password has the operator set it.
rem No restart here (RebootOnSuccess=No): the step restart-new-after-promotion
rem restarts the server, so that the runner sees this step's result first.
rem
rem Already a domain controller: nothing to do (safe to run again).
rem "undo" (the step's rollback) demotes new-sbs again and restarts it.
rem ===========================================================================
setlocal
set DOMAIN=acme.local
set SOURCE_DC=old-sbs.acme.local
set WORK=C:\mig\dcpromo
if /i "%~1"=="in-task" goto work
if /i "%~1"=="undo" goto undo
call C:\mig\bin\job.cmd promote-new "%~f0" in-task
exit /b %errorlevel%

:work
call :is_dc
if "%IS_DC%"=="1" (
    echo new-sbs is already a domain controller: nothing to do.
    exit /b 0
)
if not exist "%WORK%" mkdir "%WORK%"
> "%WORK%\replica.txt" echo [DCInstall]
>> "%WORK%\replica.txt" echo ReplicaOrNewDomain=Replica
>> "%WORK%\replica.txt" echo ReplicaDomainDNSName=%DOMAIN%
>> "%WORK%\replica.txt" echo ReplicationSourceDC=%SOURCE_DC%
>> "%WORK%\replica.txt" echo DatabasePath=%SystemRoot%\NTDS
>> "%WORK%\replica.txt" echo LogPath=%SystemRoot%\NTDS
>> "%WORK%\replica.txt" echo SYSVOLPath=%SystemRoot%\SYSVOL
>> "%WORK%\replica.txt" echo ConfirmGc=Yes
>> "%WORK%\replica.txt" echo CriticalReplicationOnly=No
>> "%WORK%\replica.txt" echo RebootOnSuccess=No
type "%WORK%\replica.txt"
echo %date% %time% dcpromo started
dcpromo /answer:"%WORK%\replica.txt"
echo %date% %time% dcpromo exited with code %errorlevel%
call :is_dc
if "%IS_DC%"=="1" (
    echo new-sbs is now a domain controller, effective after the restart.
    exit /b 0
)
echo dcpromo did not promote new-sbs: see %SystemRoot%\debug\dcpromo.log and dcpromoui.log. 1>&2
exit /b 1

:undo
call :is_dc
if "%IS_DC%"=="0" (
    echo new-sbs is not a domain controller: nothing to undo.
    exit /b 0
)
if not exist "%WORK%" mkdir "%WORK%"
> "%WORK%\demote.txt" echo [DCInstall]
>> "%WORK%\demote.txt" echo IsLastDCInDomain=No
>> "%WORK%\demote.txt" echo RebootOnSuccess=No
echo %date% %time% demoting new-sbs
dcpromo /answer:"%WORK%\demote.txt"
call :is_dc
if "%IS_DC%"=="1" (
    echo dcpromo did not demote new-sbs: see %SystemRoot%\debug\dcpromo.log. 1>&2
    exit /b 1
)
echo Demoted. Restarting in 2 minutes. Then set the local Administrator password at the console: net user Administrator *
shutdown /r /t 120 /c "ACME migration: restart after demotion"
exit /b 0

:is_dc
rem ProductType is LanmanNT on a domain controller, ServerNT on a member server.
set IS_DC=0
reg query "HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions" /v ProductType | findstr /i "LanmanNT" >nul
if not errorlevel 1 set IS_DC=1
goto :eof
